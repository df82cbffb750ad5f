"""Source manifests: which videos a dataset has, their labels and splits, and what a probe found in each file.

``builders`` turns a dataset's own annotation files (UCF-101, HMDB-51, FCVID, a folder of classes) into a
plan; ``probe`` inspects each video (header, decoded frame count, sha256); ``build`` publishes the version;
``schema`` is its Parquet schema and ``loader`` the one place that reads it back into typed records."""
