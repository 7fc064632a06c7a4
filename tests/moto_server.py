#!/usr/bin/env python3
"""moto server for jitr-infra's tests.

Starts moto's standard server (same arguments as `moto_server`) after one change that moto's
`/moto-api/config` endpoint does not offer for IoT: certificate ids are the SHA-256 of the DER
encoding, as on real AWS (moto's default hashes the PEM text).
"""
import sys

from moto.core.config import default_user_config

default_user_config.setdefault("iot", {})["use_valid_cert"] = True

from moto.server import main  # noqa: E402  (after the configuration above)

if __name__ == "__main__":
    main(sys.argv[1:])
