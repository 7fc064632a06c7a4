"""DescribeCertificate carries caCertificateId and the certificate's own validity.

AWS IoT API Reference, "CertificateDescription": caCertificateId (the CA that signed the
certificate) and validity (its notBefore/notAfter). moto omits the first and invents the
second; both are restored for device and CA certificates alike.
"""
from __future__ import annotations

from typing import Any

# ---------------------------------------------------------------------------------------------
# IoT DescribeCertificate, as the activator reads it.
#
# AWS's CertificateDescription (AWS IoT API reference, "CertificateDescription") carries
# `caCertificateId`, the id of the CA the certificate was registered with, and `validity`,
# the certificate's own notBefore/notAfter. moto leaves `caCertificateId` out of
# DescribeCertificate (its description says "you might need keys below") and invents the
# validity: the registration time plus and minus one day, whatever the certificate says.
# Both restored here, for device and CA certificates alike (DescribeCACertificate uses the
# same description). tests/moto_lambda_selfcheck.py checks both.
# ---------------------------------------------------------------------------------------------

from cryptography import x509 as _x509  # noqa: E402
from moto.iot.models import FakeCertificate  # noqa: E402

_moto_certificate_init = FakeCertificate.__init__


def _certificate_init(self: FakeCertificate, certificate_pem: str, *args: Any, **kwargs: Any) -> None:
    _moto_certificate_init(self, certificate_pem, *args, **kwargs)
    try:
        cert = _x509.load_pem_x509_certificate(certificate_pem.encode("utf-8"))
    except ValueError:
        return  # moto takes PEMs it cannot parse unless use_valid_cert is on; AWS refuses them
    # moto's timestamps are naive UTC datetimes.
    self.validity_not_before = cert.not_valid_before_utc.replace(tzinfo=None)
    self.validity_not_after = cert.not_valid_after_utc.replace(tzinfo=None)


FakeCertificate.__init__ = _certificate_init

_moto_certificate_description = FakeCertificate.to_description_dict


def _certificate_description(self: FakeCertificate) -> dict[str, Any]:
    description = _moto_certificate_description(self)
    if self.ca_certificate_id:
        description["caCertificateId"] = self.ca_certificate_id
    return description


FakeCertificate.to_description_dict = _certificate_description
