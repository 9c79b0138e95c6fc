"""Allows ``python -m gateway_analytics``."""

from gateway_analytics.cli import main

raise SystemExit(main())
