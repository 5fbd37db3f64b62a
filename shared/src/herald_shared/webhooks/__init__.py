"""Webhooks: what the API and the worker share — settings, signing, target checks, matching.

The API validates and stores subscriptions; the worker fans events out to them and delivers.
Both import these modules so that a URL the API accepts and a URL the worker calls are judged by
the same rules, and a signature the worker writes is the one the documentation describes.
"""
