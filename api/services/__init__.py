"""The work behind the routes (handlers adapt HTTP, services decide)."""
