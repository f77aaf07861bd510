"""The send engine: planning sends from CRM events, claiming due sends, the shared throughput
limiter, the sender, delivery statuses and the engine's read figures."""
