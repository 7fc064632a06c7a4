"""`python -m moto_jitr -H HOST -p PORT`: moto's server with our patches (see __init__)."""
from __future__ import annotations

import sys


def main() -> None:
    from moto_jitr import apply

    apply()
    from moto.server import main as moto_main  # after the patches

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
