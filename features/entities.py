"""Entities of the fraud features: who or what a feature describes, and the column that identifies it."""

from feast import Entity, ValueType

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64,
                  description="A paying customer (payments.customers.customer_id).")
card = Entity(name="card", join_keys=["payment_method_id"], value_type=ValueType.INT64,
              description="A payment method, a card for card payments (payments.payment_methods).")
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.INT64,
                  description="A merchant (payments.merchants).")
terminal = Entity(name="terminal", join_keys=["terminal_id"], value_type=ValueType.INT64,
                  description="A merchant's point-of-sale terminal (payments.terminals); in-person payments only.")
device = Entity(name="device", join_keys=["device_type"], value_type=ValueType.STRING,
                description="The payment's device type (mobile, desktop, tablet, pos, unknown): the OLTP records "
                            "no device fingerprint, so device novelty is per customer and device type.")
ip = Entity(name="ip", join_keys=["ip_pseudo"], value_type=ValueType.STRING,
            description="A payer IP address, by silver's keyed pseudonym (the address itself is encrypted).")
