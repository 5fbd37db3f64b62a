"""The worker's SQL, one module per thing it holds (the webhook tables' SQL is in
``herald_worker.webhooks.store``). Handlers and jobs call these; they hold no SQL themselves."""
