"""Test support code, the one package every test imports it from: running jobs and reading
their outcome (``runs``), the demo v1 (``demo``), the session's v2 servers (``servers``), and
stand-ins and fault injection for the services the product talks to."""
