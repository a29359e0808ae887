"""The inventory: configuration every layer reads, so it sits below them all (tui → plans → probes → inventory).

`inventory.model` holds the frozen data, `inventory.load` reads and validates a file into it
(`inventory.validate` checks each table, `inventory.names` what AWS and the file system accept), and
`inventory.toml` is the one TOML reader the inventory and the plan share. Nothing here imports probes,
plans or tui.
"""
