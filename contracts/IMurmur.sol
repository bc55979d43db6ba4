// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

// Shared types of the Murmur settlement contracts (docs/settlement.md fixes every encoding).

// ---- ERC-7683, revision of 2025-01-08 (FillInstruction.destinationChainId is a uint256) ----

/// @notice A cross-chain order signed by its user and opened by someone else (`openFor`).
struct GaslessCrossChainOrder {
    address originSettler;
    address user;
    uint256 nonce;
    uint256 originChainId;
    uint32 openDeadline;
    uint32 fillDeadline;
    bytes32 orderDataType;
    bytes orderData;
}

/// @notice A cross-chain order opened by its user herself (`open`).
struct OnchainCrossChainOrder {
    uint32 fillDeadline;
    bytes32 orderDataType;
    bytes orderData;
}

/// @notice One token amount on one chain; addresses as bytes32 (ERC-7683 is chain agnostic).
struct Output {
    bytes32 token;
    uint256 amount;
    bytes32 recipient;
    uint256 chainId;
}

/// @notice What a filler needs to fill on one destination chain.
struct FillInstruction {
    uint256 destinationChainId;
    bytes32 destinationSettler;
    bytes originData;
}

/// @notice The order as fillers see it, emitted in `Open`.
struct ResolvedCrossChainOrder {
    address user;
    uint256 originChainId;
    uint32 openDeadline;
    uint32 fillDeadline;
    bytes32 orderId;
    Output[] maxSpent;
    Output[] minReceived;
    FillInstruction[] fillInstructions;
}

// ---- Murmur ----

/// @notice The payload of `orderData` (`orderDataType` = keccak256 of its type string). Token 0 is native.
struct MurmurOrder {
    address inputToken;
    uint256 inputAmount;
    address outputToken;
    uint256 outputAmount;
    address recipient;
    uint256[] destinationChainIds; // empty: any rollup of the network
}

/// @notice A Murmur block header; its hash is keccak256(abi.encode(header)).
struct Header {
    uint64 height;
    uint32 round;
    uint64 timeMs;
    address proposer;
    bytes32 parentHash;
    bytes32 bodyHash;
    bytes32 settlementRoot;
    bytes32 validatorsHash;
    bytes32 nextValidatorsHash;
}

/// @notice One validator's precommit for a header, EIP-712 signed under the network domain.
struct Precommit {
    address validator;
    uint64 timestampMs;
    bytes32 extensionHash;
    bytes signature;
}

/// @notice The precommits that committed a block, signers strictly ascending.
struct Certificate {
    uint32 round;
    Precommit[] precommits;
}

/// @notice A header, its certificate and the validator set that signed it.
struct CommitProof {
    Header header;
    Certificate certificate;
    address[] validators;
    uint256[] powers;
}

/// @notice A settlement-root leaf: kind 1 FILL (repay the executor), kind 2 REFUND (pay the user back).
struct Leaf {
    uint8 kind;
    bytes32 orderId;
    uint256 originChainId;
    uint256 destinationChainId;
    address executor;
    address token;
    uint256 amount;
    address recipient;
}

/// @notice What the settler needs of the light client.
interface IMurmurLightClient {
    /// @notice The block hash of `proof.header` if more than 2/3 of a trusted set signed it; reverts otherwise.
    function verify(CommitProof calldata proof) external view returns (bytes32 blockHash);
}
