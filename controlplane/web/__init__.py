"""Server-rendered pages (Jinja2), Korean by default with an English switch."""
