"""Report writers: each study's tables, figures and report.md, and the gallery."""
