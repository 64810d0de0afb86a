"""Efficiency report: NTIRE 2023 ESR Table 3 re-ranked with measured entries, rendered as Markdown/CSV/LaTeX/JSON/PNG."""
