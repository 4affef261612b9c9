"""The pipeline: config, claims, scorecard, plotting and the helpers the Snakemake workflow calls."""
