"""Views of explanations and inspections: the terminal, self-contained HTML files."""
