#!/usr/bin/env python3
# Builds a minimal OCI image layout (one random layer) in DIR.
import gzip, hashlib, io, json, os, sys, tarfile
out = sys.argv[1]
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(data)
    return "sha256:" + d, len(data)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    payload = os.urandom(int(sys.argv[2]) if len(sys.argv) > 2 else 3 << 20)
    info = tarfile.TarInfo("data.bin"); info.size = len(payload)
    t.addfile(info, io.BytesIO(payload))
layer = gzip.compress(buf.getvalue(), compresslevel=1)
ld, ls = blob(layer)
diff = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff]}, "config": {}}).encode()
cd, cs = blob(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}]}).encode()
md, ms = blob(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
    "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, open(out + "/index.json", "w"))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion": "1.0.0"}')
print(ld)
