{
  "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
  "messageSignature": {
    "messageDigest": {
      "algorithm": "SHA2_256",
      "digest": "k3fwzaB8y9l+PisZV/h8yVHdJUx9KhuN+81ScWuTQOA="
    },
    "signature": "MEQCIAchG2ArXuhTWAyfT2+bIoiGzstH3VL2yLEeGwOKmvo9AiAtU538DdZI0l/3o/dPmRnkV5eYjMzBOMsMCuoqtKr6nA=="
  },
  "verificationMaterial": {
    "publicKey": {
      "hint": "cihub-test-key:ecdsa-p256-sha256:MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAESNRVSObA09plg6HSrQNvnanqLBs+kVE+JNwamYc/PFOxM50OxygmEmQ8qHW9y+rdLOYH4Vgn4kVxQyK/ewwI2Q=="
    },
    "tlogEntries": []
  }
}
