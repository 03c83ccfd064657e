"""dask-jobqueue's config module: jqref reads `jobqueue.*` keys itself."""
