"""`routeyard fleet-sim`: a discrete-event simulation (SimPy) of a workload on a GPU pool.

See docs/fleet.md. Nothing here is imported on the request path.
"""
