"""The daemon: object cache, controller, sources (API watch, manifest directory), HTTP
endpoints, metrics, Events and configuration."""
