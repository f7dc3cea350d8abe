#!/usr/bin/env python3
# Builds a minimal OCI image layout in DIR and prints the layer's digest:
#   mkimage.py DIR [LAYER_BYTES]         one image (one random layer), tagged v1
#   mkimage.py DIR LAYER_BYTES multi     also an index tagged "multi" of two images (linux/amd64
#                                        and linux/arm64, a layer each); prints
#                                        "<v1 layer> <amd64 layer> <arm64 layer> <arm64 config>"
import gzip, hashlib, io, json, os, sys, tarfile
out = sys.argv[1]
size = int(sys.argv[2]) if len(sys.argv) > 2 else 3 << 20
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(data)
    return "sha256:" + d, len(data)
def image(arch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        payload = os.urandom(size)
        info = tarfile.TarInfo("data.bin"); info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    layer = gzip.compress(buf.getvalue(), compresslevel=1)
    ld, ls = blob(layer)
    diff = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff]}, "config": {}}).encode()
    cd, cs = blob(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}]}).encode()
    md, ms = blob(manifest)
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms}, ld, cd
v1, layer, _ = image("amd64")
refs = [dict(v1, annotations={"org.opencontainers.image.ref.name": "v1"})]
printed = [layer]
if len(sys.argv) > 3 and sys.argv[3] == "multi":
    amd, amd_layer, _ = image("amd64")
    arm, arm_layer, arm_config = image("arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        dict(amd, platform={"os": "linux", "architecture": "amd64"}),
        dict(arm, platform={"os": "linux", "architecture": "arm64", "variant": "v8"})]}).encode()
    xd, xs = blob(index)
    refs.append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": xd, "size": xs,
                 "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    printed += [amd_layer, arm_layer, arm_config]
json.dump({"schemaVersion": 2, "manifests": refs}, open(out + "/index.json", "w"))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion": "1.0.0"}')
print(" ".join(printed))
