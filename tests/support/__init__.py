"""Test support code: stand-ins for the services the product talks to."""
