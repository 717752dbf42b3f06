"""The system inventory: agency systems and their stacks, the component catalogue, open-source adoption and
migration plans.

`domain`, `matching`, `windows`, `planning` and `ingress` hold the pure rules (standard library only); `files`
reads and writes the data files and inventory files; `service` keeps the systems in the database.
"""
