"""The `contactcenter` sub-commands, one module per command group."""
