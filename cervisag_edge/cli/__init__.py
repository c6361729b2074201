"""Command-line interface: ``cervisag <subcommand>``."""
