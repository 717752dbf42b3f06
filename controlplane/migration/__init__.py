"""Migration of agency systems onto the cloud: inventory, component catalogue, waves, plans and steps.

`domain` holds the pure rules (standard library only); `catalogue` loads the data files into them.
"""
