"""What people read: the compile report and tables (compile.py), the HTML build report
(html.py) and its plots (plots.py)."""
