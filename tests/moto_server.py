#!/usr/bin/env python3
"""moto server for jitr-infra's tests: a thin launcher for the `moto_jitr` package beside it.

`python tests/moto_server.py -H 127.0.0.1 -p PORT` is `python -m moto_jitr -H 127.0.0.1 -p PORT`
run from tests/. The patches, one module each, and what AWS behaviour each restores are in
tests/moto_jitr/ (its __init__ lists them).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from moto_jitr.__main__ import main  # noqa: E402

if __name__ == "__main__":
    main()
