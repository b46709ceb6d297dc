"""fal's queue API under /fal/ (`queue.fal.run`'s routes, so `fal-client` and
`@fal-ai/client` work unmodified with FAL_QUEUE_RUN_HOST pointed here): a translation onto
retouch.api.operations, in fal's field forms, bodies and errors."""
