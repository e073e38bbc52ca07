"""payments-lakehouse: a payments data platform on Spark and Delta Lake."""

from setuptools import find_packages, setup

setup(
    name="payments-lakehouse",
    version="0.1.0",
    description="Payments OLTP -> CDC -> Kafka -> Spark/Delta lakehouse, with feature store and fraud models",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["lakehouse", "lakehouse.*"]),
    package_data={"lakehouse": ["py.typed"]},
    install_requires=[
        "pyspark==4.1.1",
        "delta-spark==4.4.0",
        "great-expectations[spark]==1.24.1",
        "feast[spark,redis,postgres]==0.67.0",
        "mlflow==3.17.2",
        "kafka-python==3.0.12",
        "crc32c",                       # kafka-python's record CRC in C (pure Python caps a producer at ~2k/s)
        "psycopg[binary,pool]>=3.2,<4",
        "PyYAML>=6,<7",
        "pyarrow",                      # Parquet files for `lakehouse oltp import`
        "redis>=5",
    ],
    extras_require={
        "dev": ["pytest>=8", "chispa==0.12.0", "ruff", "mypy", "types-PyYAML"],
    },
    entry_points={"console_scripts": ["lakehouse=lakehouse.cli:main"]},
)
