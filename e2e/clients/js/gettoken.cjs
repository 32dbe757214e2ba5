// gettoken.cjs is what a Node.js application in an injected pod does: it
// asks @azure/identity for a token with nothing but the environment the
// webhook injected, and prints the token's decoded claims as JSON (never the
// token). The e2e client matrix runs it with exactly a container's env, and
// NODE_PATH pointing at the lockfile-pinned packages in the tools cache.
"use strict";

const { DefaultAzureCredential, ManagedIdentityCredential } = require("@azure/identity");

async function main() {
  const args = Object.fromEntries(
    process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=", 2)),
  );
  const kind = args.credential || "default";
  const resource = args.resource || "https://storage.azure.com";
  let cred;
  if (kind === "default") {
    cred = new DefaultAzureCredential();
  } else if (kind === "managed") {
    cred = new ManagedIdentityCredential();
  } else {
    throw new Error(`--credential ${kind}: want default or managed`);
  }
  const tok = await cred.getToken(resource.replace(/\/$/, "") + "/.default");
  const payload = tok.token.split(".")[1];
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
  const version = require("@azure/identity/package.json").version;
  process.stdout.write(JSON.stringify({ credential: kind, resource, sdk: `@azure/identity ${version}`, claims }) + "\n");
}

main().catch((err) => {
  // The error's own words are what a user sees; the test asserts on them.
  process.stderr.write(`gettoken.cjs: ${err.name}: ${err.message}\n`);
  process.exit(1);
});
