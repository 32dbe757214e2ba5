"""gettoken.py is what a Python application in an injected pod does: it asks
azure.identity for a token with nothing but the environment the webhook
injected, and prints the token's decoded claims as JSON (never the token).
The e2e client matrix runs it with Debian's /usr/bin/python3 and its
python3-azure package, with exactly a container's env."""

import argparse
import base64
import json
import sys

import azure.identity
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--credential", default="default", choices=["default", "managed"])
    p.add_argument("--resource", default="https://storage.azure.com")
    args = p.parse_args()
    cred = DefaultAzureCredential() if args.credential == "default" else ManagedIdentityCredential()
    try:
        tok = cred.get_token(args.resource.rstrip("/") + "/.default")
    except Exception as err:  # the error's own words are what a user sees
        print("gettoken.py: %s: %s" % (type(err).__name__, err), file=sys.stderr)
        return 1
    payload = tok.token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    json.dump({"credential": args.credential, "resource": args.resource,
               "sdk": "azure-identity " + azure.identity.__version__, "claims": claims}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
