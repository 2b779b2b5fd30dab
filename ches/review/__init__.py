"""What people do with the numbers: decisions, browse, map, token diff, export, probe.

See docs/ARCHITECTURE.md. This half never imports streamlit."""
