"""The terminal front doors behind `parley <command>`: each runs the core and prints a report."""
