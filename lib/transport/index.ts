/** The network transport: raftpb Messages between node processes (see transport.ts for the design). */
export { backoffDelay, Transport } from './transport.js';
export type {
  BackoffOptions,
  GroupMessage,
  PeerAddress,
  PeerStatus,
  SnapshotTransferStatus,
  StagedSnapshotFile,
  TransportOptions,
  TransportPeerBytes,
  TransportRefusals,
  TransportStats,
  TransportTlsOptions,
} from './transport.js';
export { createClusterCertificates, memberIdOfCertificate, memberUri, readTlsFiles } from './tls.js';
export type { MemberTlsFiles } from './tls.js';
export { isLoopbackHost } from './options.js';
export {
  attachmentFromEntryDirectory,
  discardStagedDirectories,
  entryDirectoryAttachments,
  isAttachmentFileName,
  STAGED_DIRECTORY_PREFIX,
} from './attachments.js';
export type { AttachmentFile, AttachmentsProvider, EntryAttachment } from './attachments.js';
export {
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  FrameDecoder,
  FrameKind,
  TransportError,
  TransportErrorCode,
} from './framing.js';
export type { Frame } from './framing.js';
