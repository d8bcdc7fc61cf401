import os

# Ray reads this when it is imported: it pins a local cluster to loopback (../shared/ENGINES.md)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
