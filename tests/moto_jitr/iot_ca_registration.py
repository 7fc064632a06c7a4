"""RegisterCACertificate of a registered CA fails; DescribeCACertificate reports its mode and
its auto-registration.

AWS IoT API Reference, "RegisterCACertificate": ResourceAlreadyExistsException when the CA
certificate is already registered in the account and region (moto registers it again); and
"CACertificateDescription": certificateMode (moto drops the mode it was registered with) and
autoRegistrationStatus, ENABLE or DISABLE, as RegisterCACertificate's allowAutoRegistration
(default false) and UpdateCACertificate's newAutoRegistrationStatus set it (moto ignores both
and never reports it).
"""
from __future__ import annotations

from typing import Any

# ---------------------------------------------------------------------------------------------
# CA registration: the same CA certificate registered twice.
#
# AWS IoT answers RegisterCACertificate for a certificate already registered in the account and
# region with ResourceAlreadyExistsException (HTTP 409) naming the registered CA in resourceId
# and resourceArn (RegisterCACertificate API reference, Errors; the same holds whatever
# certificateMode the second call asks for, which is why a mode change is never an in-place
# update). moto 5.2.1 registers it again, silently replacing the first registration, so
# a provider that adopts someone else's CA without noticing would pass every test.
# ---------------------------------------------------------------------------------------------

from moto.iot.exceptions import ResourceAlreadyExistsException as _IotAlreadyExists  # noqa: E402
from moto.iot.models import FakeCaCertificate, IoTBackend  # noqa: E402

_moto_register_ca_certificate = IoTBackend.register_ca_certificate


def _register_ca_certificate(self: IoTBackend, ca_certificate: str, *args: Any, **kwargs: Any) -> Any:
    # The id as moto computes it (the DER's SHA-256 here, see use_valid_cert above).
    candidate = FakeCaCertificate(ca_certificate, "INACTIVE", self.account_id, self.region_name, {})
    existing = self.ca_certificates.get(candidate.certificate_id)
    if existing is not None:
        raise _IotAlreadyExists(
            "The certificate is already provisioned or registered", existing.certificate_id, existing.arn
        )
    return _moto_register_ca_certificate(self, ca_certificate, *args, **kwargs)


IoTBackend.register_ca_certificate = _register_ca_certificate


# DescribeCACertificate reports the CA's certificateMode on AWS (CACertificateDescription in the
# API reference); moto 5.2.1 drops the mode RegisterCACertificate was given and never reports
# one, which would hide a mode mismatch from the provider's check.
from moto.iot.responses import IoTResponse  # noqa: E402

_moto_register_ca_response = IoTResponse.register_ca_certificate
_moto_ca_description = FakeCaCertificate.to_description_dict


def _register_ca_response(self: IoTResponse) -> Any:
    result = _moto_register_ca_response(self)  # raises when the CA is already registered
    pem = self._get_param("caCertificate")
    backend = self.iot_backend
    ca_id = FakeCaCertificate(pem, "INACTIVE", backend.account_id, backend.region_name, {}).certificate_id
    # AWS's default when the request names no mode.
    backend.ca_certificates[ca_id].certificate_mode = self._get_param("certificateMode") or "DEFAULT"
    allow = (self.querystring.get("allowAutoRegistration") or ["false"])[0]
    backend.ca_certificates[ca_id].auto_registration_status = "ENABLE" if str(allow).lower() == "true" else "DISABLE"
    return result


_moto_update_ca_response = IoTResponse.update_ca_certificate


def _update_ca_response(self: IoTResponse) -> Any:
    result = _moto_update_ca_response(self)
    status = (self.querystring.get("newAutoRegistrationStatus") or [None])[0]
    if status in ("ENABLE", "DISABLE"):
        ca_id = self.path.split("/")[-1]
        self.iot_backend.ca_certificates[ca_id].auto_registration_status = status
    return result


def _ca_description(self: FakeCaCertificate) -> dict[str, Any]:
    description = _moto_ca_description(self)
    description["certificateMode"] = getattr(self, "certificate_mode", "DEFAULT")
    description["autoRegistrationStatus"] = getattr(self, "auto_registration_status", "DISABLE")
    return description


IoTResponse.register_ca_certificate = _register_ca_response
IoTResponse.update_ca_certificate = _update_ca_response
FakeCaCertificate.to_description_dict = _ca_description
