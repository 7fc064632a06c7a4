"""IoT certificate ids are the SHA-256 of the certificate's DER encoding, as on AWS.

AWS IoT names a certificate by the SHA-256 fingerprint of its DER bytes: the id in its ARN
(AWS IoT API Reference, "Certificate" and "CertificateDescription": certificateId), which the
activator and the CA provider compute themselves. moto's default hashes the PEM text; its
`use_valid_cert` setting switches it to the DER hash (moto's `/moto-api/config` does not
offer this for IoT, so it is set here before any IoT model exists).
"""
from __future__ import annotations


from moto.core.config import default_user_config

default_user_config.setdefault("iot", {})["use_valid_cert"] = True
