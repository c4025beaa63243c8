"""The reviewer console (FastAPI): sign-in and roles, calls, reviews, exports, JSON API."""
