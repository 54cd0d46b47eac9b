/**
 * The server half of WhatsApp's Noise XX handshake and transport, mirroring Baileys'
 * `lib/Utils/noise-handler.js` (the client half), built only from Baileys' exports.
 *
 * Wire format: the client opens with a 4-byte intro (`W`, `A`, 6, DICT_VERSION), then every
 * message in either direction is a 3-byte big-endian length and that many bytes. Handshake
 * messages are `proto.HandshakeMessage`; after the handshake each frame is an AES-GCM sealed
 * binary node, with one counter per direction.
 */
import {
  aesDecryptGCM,
  aesEncryptGCM,
  Curve,
  hkdf,
  NOISE_MODE,
  NOISE_WA_HEADER,
  proto,
  sha256,
  type KeyPair,
} from '@whiskeysockets/baileys';

/** A test certificate authority: the root key the client trusts, and the chain it signs. */
export type FakeCertificates = {
  /** Set `WA_CERT_DETAILS.PUBLIC_KEY` to this in the process that runs Baileys. */
  rootPublicKey: Buffer<ArrayBuffer>;
  /** The server's static Noise key pair; the leaf certificate names its public key. */
  serverStatic: KeyPair;
  /** `proto.CertChain`, encoded: intermediate signed by the root, leaf by the intermediate. */
  certChain: Uint8Array;
};

/** Makes a fresh root, intermediate and leaf. The issuer serial must match `WA_CERT_DETAILS.SERIAL` (0). */
export function makeFakeCertificates(): FakeCertificates {
  const root = Curve.generateKeyPair();
  const intermediate = Curve.generateKeyPair();
  const serverStatic = Curve.generateKeyPair();
  const intermediateDetails = proto.CertChain.NoiseCertificate.Details.encode({
    serial: 1,
    issuerSerial: 0,
    key: intermediate.public,
    notBefore: 0,
    notAfter: 0,
  }).finish();
  const leafDetails = proto.CertChain.NoiseCertificate.Details.encode({
    serial: 2,
    issuerSerial: 1,
    key: serverStatic.public,
    notBefore: 0,
    notAfter: 0,
  }).finish();
  const certChain = proto.CertChain.encode({
    intermediate: {
      details: intermediateDetails,
      signature: Buffer.from(Curve.sign(root.private, intermediateDetails)),
    },
    leaf: {
      details: leafDetails,
      signature: Buffer.from(Curve.sign(intermediate.private, leafDetails)),
    },
  }).finish();
  // A copy in a fresh buffer: the type of WA_CERT_DETAILS.PUBLIC_KEY is Buffer<ArrayBuffer>.
  const rootPublicKey = Buffer.alloc(root.public.length);
  rootPublicKey.set(root.public);
  return { rootPublicKey, serverStatic, certChain };
}

function ivFor(counter: number): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeUInt32BE(counter, 8);
  return iv;
}

/**
 * The handshake state, server side. Call `serverHello` with the client's ClientHello, then
 * `clientFinish` with its ClientFinish; then `transport()` gives the frame ciphers.
 */
export class ServerNoiseHandshake {
  private hash: Buffer;
  private salt: Buffer;
  private key: Buffer;
  private counter = 0;
  private readonly ephemeral = Curve.generateKeyPair();
  private clientEphemeral: Buffer | undefined;

  constructor(private readonly certs: FakeCertificates) {
    const mode = Buffer.from(NOISE_MODE);
    this.hash = mode.length === 32 ? mode : sha256(mode);
    this.salt = this.hash;
    this.key = this.hash;
    this.authenticate(NOISE_WA_HEADER);
  }

  private authenticate(data: Uint8Array): void {
    this.hash = sha256(Buffer.concat([this.hash, data]));
  }

  private mixIntoKey(data: Uint8Array): void {
    const out = hkdf(Buffer.from(data), 64, { salt: this.salt, info: '' });
    this.salt = Buffer.from(out.subarray(0, 32));
    this.key = Buffer.from(out.subarray(32));
    this.counter = 0;
  }

  private encrypt(plaintext: Uint8Array): Buffer {
    const sealed = aesEncryptGCM(plaintext, this.key, ivFor(this.counter++), this.hash);
    this.authenticate(sealed);
    return sealed;
  }

  private decrypt(ciphertext: Uint8Array): Buffer {
    const plain = aesDecryptGCM(ciphertext, this.key, ivFor(this.counter++), this.hash);
    this.authenticate(ciphertext);
    return plain;
  }

  /** Answers a ClientHello with an encoded ServerHello handshake message. */
  serverHello(clientEphemeral: Uint8Array): Uint8Array {
    if (clientEphemeral.length !== 32) {
      throw new Error(`client ephemeral key has ${clientEphemeral.length} bytes, expected 32`);
    }
    this.clientEphemeral = Buffer.from(clientEphemeral);
    this.authenticate(clientEphemeral);
    this.authenticate(this.ephemeral.public);
    this.mixIntoKey(Curve.sharedKey(this.ephemeral.private, this.clientEphemeral));
    const staticEnc = this.encrypt(this.certs.serverStatic.public);
    this.mixIntoKey(Curve.sharedKey(this.certs.serverStatic.private, this.clientEphemeral));
    const payloadEnc = this.encrypt(this.certs.certChain);
    return proto.HandshakeMessage.encode({
      serverHello: { ephemeral: this.ephemeral.public, static: staticEnc, payload: payloadEnc },
    }).finish();
  }

  /**
   * Reads the ClientFinish: the client's static (noise) public key and its ClientPayload
   * (login or registration). Throws when either fails to decrypt.
   */
  clientFinish(
    staticEnc: Uint8Array,
    payloadEnc: Uint8Array,
  ): {
    clientStaticKey: Buffer;
    payload: proto.ClientPayload;
  } {
    const clientStaticKey = this.decrypt(staticEnc);
    this.mixIntoKey(Curve.sharedKey(this.ephemeral.private, clientStaticKey));
    const payload = proto.ClientPayload.decode(this.decrypt(payloadEnc));
    return { clientStaticKey, payload };
  }

  /** The transport ciphers, once the handshake is done. */
  transport(): NoiseTransport {
    const out = hkdf(Buffer.alloc(0), 64, { salt: this.salt, info: '' });
    // The client encrypts with the first half and decrypts with the second.
    return new NoiseTransport(Buffer.from(out.subarray(32)), Buffer.from(out.subarray(0, 32)));
  }
}

/** AES-GCM frame ciphers after the handshake, with one counter per direction. */
export class NoiseTransport {
  private readCounter = 0;
  private writeCounter = 0;

  constructor(
    private readonly encKey: Buffer,
    private readonly decKey: Buffer,
  ) {}

  encrypt(plaintext: Uint8Array): Buffer {
    return aesEncryptGCM(plaintext, this.encKey, ivFor(this.writeCounter++), Buffer.alloc(0));
  }

  decrypt(ciphertext: Uint8Array): Buffer {
    return aesDecryptGCM(ciphertext, this.decKey, ivFor(this.readCounter++), Buffer.alloc(0));
  }
}

/**
 * Splits the client's byte stream into frames: skips the 4-byte intro once, then yields each
 * 3-byte-length-prefixed payload. Hostile input (a bad intro) throws.
 */
export class FrameReader {
  private buffered: Buffer = Buffer.alloc(0);
  private introSeen = false;

  push(chunk: Buffer): Buffer[] {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    const frames: Buffer[] = [];
    if (!this.introSeen) {
      if (this.buffered.length < NOISE_WA_HEADER.length) return frames;
      const intro = this.buffered.subarray(0, NOISE_WA_HEADER.length);
      if (!intro.equals(NOISE_WA_HEADER)) {
        throw new Error(`bad WA intro ${intro.toString('hex')}; routing-info intros are not faked`);
      }
      this.buffered = this.buffered.subarray(NOISE_WA_HEADER.length);
      this.introSeen = true;
    }
    while (this.buffered.length >= 3) {
      const size = this.buffered.readUIntBE(0, 3);
      if (this.buffered.length < size + 3) break;
      frames.push(Buffer.from(this.buffered.subarray(3, size + 3)));
      this.buffered = this.buffered.subarray(size + 3);
    }
    return frames;
  }
}

/** Prefixes a payload with its 3-byte length, as every server-to-client frame is. */
export function lengthPrefixed(payload: Uint8Array): Buffer {
  const frame = Buffer.alloc(3 + payload.length);
  frame.writeUIntBE(payload.length, 0, 3);
  frame.set(payload, 3);
  return frame;
}
