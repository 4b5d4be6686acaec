// placeholder while the core builds
