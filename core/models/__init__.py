"""Models: which ones this machine can offer and how they load safely (`registry`), the narrow interface
the engine decodes through (`lm`), our own architectures (`architectures`), and how the shipped ones
are trained (`training`) and described (`cards`)."""
