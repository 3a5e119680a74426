"""The node service's parts, one module per thing a node serves (members, stays, redemptions,
vouchers, stored value, staff, the node itself), over one shared core.

``staypoint.edge.service.NodeService`` composes them and is what the kiosk and the CLI use;
nothing outside ``edge`` imports these modules directly.
"""
