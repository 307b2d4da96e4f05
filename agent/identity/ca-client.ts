// What the certificate manager needs from a CA, whichever it is: the embedded CA in local mode, or
// (later) istiod's IstioCertificateService over gRPC. The shapes follow Istio's CreateCertificate.

import type { SpiffeId } from '../state/model.js';
import type { IdentityResult } from './errors.js';

export interface CaClient {
  /**
   * Asks for a certificate for `identity`, whose key signed `csrPem`, valid for `ttlSeconds`.
   * On success: PEM certificates, leaf first and root last (IstioCertificateResponse.cert_chain).
   * Refusals and transport failures are results, never exceptions.
   */
  requestCertificate(csrPem: string, identity: SpiffeId, ttlSeconds: number): Promise<IdentityResult<readonly string[]>>;
}
