"""HTTP plumbing every route shares: media types, problem responses, conditional requests, and
the middleware around the app (body limit, request context, head sampling)."""
