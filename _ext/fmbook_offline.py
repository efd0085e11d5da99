"""Sphinx extension of the book: keep every page free of CDN loads and JavaScript errors.

jupyter-book 1.x always loads ``sphinx_thebe``. Even with thebe switched off it puts a configuration
``<script>`` declaring ``const THEBE_JS_URL = "https://unpkg.com/..."`` and ``sphinx-thebe.js`` on
every page, and with Sphinx 7.4 the configuration script is emitted twice, which raises
"Identifier 'THEBE_JS_URL' has already been declared" in the browser. This book does not use thebe
(``launch_buttons.thebe: false`` in ``_config.yml``; Binder and Colab buttons are plain links), so
the extension stops sphinx_thebe from adding those assets and its per-page thebe configuration. If thebe is ever switched on, nothing is
removed.
"""

from __future__ import annotations


def _thebe_enabled(app) -> bool:
    launch = (app.config.html_theme_options or {}).get("launch_buttons") or {}
    return bool(launch.get("thebe")) or bool((app.config.thebe_config or {}).get("always_load"))


def _drop_thebe_assets(app, config) -> None:
    if "sphinx_thebe" not in app.extensions or _thebe_enabled(app):
        return
    unwanted = {
        "env-before-read-docs": "init_thebe_core",    # config <script>, sphinx-thebe.js
        "doctree-resolved": "update_thebe_context",   # <script type="text/x-thebe-config">
    }
    for event, name in unwanted.items():
        for listener in list(app.events.listeners.get(event, [])):
            handler = listener.handler
            if getattr(handler, "__module__", "") == "sphinx_thebe" and handler.__name__ == name:
                app.disconnect(listener.id)


def setup(app):
    # priority 900: after the other config-inited handlers, once every extension is set up.
    app.connect("config-inited", _drop_thebe_assets, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
