"""The send engine: planning sends from CRM events (planning), claiming due sends (claiming), the
shared throughput limiter (limiter, limiter_backends), one claimed batch's re-checks and POSTs
(batch, sender, outcomes, bulk), delivery statuses (statuses), opt-outs and exits (optout), the
pass loop (passes) and the engine's read figures (stats)."""
