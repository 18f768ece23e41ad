"""`python3 -m toxiproxy`: run the fault proxy server."""

from .server import main

raise SystemExit(main())
