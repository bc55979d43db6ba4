// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {CommitProof, Header, IMurmurLightClient, Precommit} from "./IMurmur.sol";

/// @title MurmurLightClient
/// @notice Trusts the hashes of the Murmur network's validator sets (the current one and RETAINED - 1 before
/// it) and verifies that more than 2/3 of a trusted set's power precommitted a block header.
/// @dev Precommits are EIP-712 `Vote`s under the network domain `EIP712Domain(string name,string version,
/// bytes32 salt)`; OpenZeppelin's EIP712 only builds chainId/verifyingContract domains, so the separator is
/// computed here by hand (docs/settlement.md, "Commit proof").
contract MurmurLightClient is IMurmurLightClient {
    /// @notice Validator sets kept trusted: the current one and the 3 before it.
    uint256 public constant RETAINED = 4;

    bytes32 private constant DOMAIN_TYPEHASH = keccak256("EIP712Domain(string name,string version,bytes32 salt)");
    bytes32 private constant VOTE_TYPEHASH = keccak256(
        "Vote(uint8 kind,uint64 height,uint32 round,bytes32 blockHash,uint64 timestampMs,bytes32 extensionHash)"
    );
    uint8 private constant PRECOMMIT = 2;

    /// @notice Separator of the network domain {name "Murmur", version "1", salt}.
    bytes32 public immutable voteDomainSeparator;

    /// @dev The last RETAINED rotations, ring-indexed by rotation count (index 0 is the deploy set).
    bytes32[RETAINED] private _sets;
    /// @dev How many ring entries hold a hash: a set that comes back is trusted while any entry holds it.
    mapping(bytes32 => uint256) private _entries;
    uint256 private _rotations;
    uint64 private _latestHeight;

    event Rotated(bytes32 indexed validatorsHash, uint64 height);

    error UntrustedValidatorSet(bytes32 validatorsHash);
    error ValidatorSetMismatch();
    error SignersNotAscending();
    error UnknownSigner(address signer);
    error BadSignature(address signer);
    error NoQuorum(uint256 power, uint256 total);
    error StaleHeader(uint64 height, uint64 latest);
    error NothingToRotate();

    /// @param networkSalt keccak256(utf8(networkId)), binds signatures to one network.
    /// @param validators The genesis set, addresses strictly ascending.
    /// @param powers Their voting powers, `powers[i]` of `validators[i]`, all positive.
    constructor(bytes32 networkSalt, address[] memory validators, uint256[] memory powers) {
        if (validators.length == 0 || validators.length != powers.length) revert ValidatorSetMismatch();
        for (uint256 i = 0; i < validators.length; i++) {
            if (i > 0 && validators[i] <= validators[i - 1]) revert ValidatorSetMismatch();
            if (powers[i] == 0) revert ValidatorSetMismatch();
        }
        voteDomainSeparator =
            keccak256(abi.encode(DOMAIN_TYPEHASH, keccak256("Murmur"), keccak256("1"), networkSalt));
        bytes32 h = keccak256(abi.encode(validators, powers));
        _sets[0] = h;
        _entries[h] = 1;
        emit Rotated(h, 0);
    }

    /// @notice True while `validatorsHash` is one of the RETAINED most recent sets.
    function isTrusted(bytes32 validatorsHash) public view returns (bool) {
        return validatorsHash != bytes32(0) && _entries[validatorsHash] > 0;
    }

    /// @notice The hash of the set trusted last.
    function currentValidatorsHash() public view returns (bytes32) {
        return _sets[_rotations % RETAINED];
    }

    /// @notice Header height of the last rotation (0 at deploy).
    function latestHeight() external view returns (uint64) {
        return _latestHeight;
    }

    /// @inheritdoc IMurmurLightClient
    function verify(CommitProof calldata proof) external view returns (bytes32 blockHash) {
        return _verify(proof);
    }

    /// @notice Trusts `proof.header.nextValidatorsHash` as the current set, given a header the current set
    /// certified. Anyone may relay it.
    /// @dev Only the current set may hand over: a retained older set (whose members may since have left and
    /// no longer care) can still prove headers for claims, but cannot name a new set.
    function rotate(CommitProof calldata proof) external {
        Header calldata header = proof.header;
        if (header.height <= _latestHeight) revert StaleHeader(header.height, _latestHeight);
        bytes32 current = currentValidatorsHash();
        bytes32 next = header.nextValidatorsHash;
        if (next == current || next == bytes32(0)) revert NothingToRotate();
        if (header.validatorsHash != current) revert UntrustedValidatorSet(header.validatorsHash);
        _verify(proof);

        uint256 slot = (_rotations + 1) % RETAINED;
        bytes32 evicted = _sets[slot];
        if (evicted != bytes32(0)) _entries[evicted] -= 1;
        _sets[slot] = next;
        _entries[next] += 1;
        _rotations += 1;
        _latestHeight = header.height;
        emit Rotated(next, header.height);
    }

    function _verify(CommitProof calldata proof) private view returns (bytes32 blockHash) {
        if (proof.validators.length != proof.powers.length) revert ValidatorSetMismatch();
        bytes32 setHash = keccak256(abi.encode(proof.validators, proof.powers));
        if (setHash != proof.header.validatorsHash) revert ValidatorSetMismatch();
        if (!isTrusted(setHash)) revert UntrustedValidatorSet(setHash);
        blockHash = keccak256(abi.encode(proof.header));
        uint256 total = 0;
        for (uint256 i = 0; i < proof.powers.length; i++) {
            total += proof.powers[i];
        }
        uint256 power = _signedPower(proof, blockHash);
        if (power * 3 <= total * 2) revert NoQuorum(power, total);
    }

    /// @dev The power of the certificate's signers, each checked: ascending, in the set, signature its own.
    function _signedPower(CommitProof calldata proof, bytes32 blockHash) private view returns (uint256 power) {
        address[] calldata validators = proof.validators;
        Precommit[] calldata precommits = proof.certificate.precommits;
        uint256 j = 0; // validators are ascending too: one merge walk finds every signer
        address previous = address(0);
        for (uint256 i = 0; i < precommits.length; i++) {
            Precommit calldata p = precommits[i];
            address signer = p.validator;
            if (i > 0 && signer <= previous) revert SignersNotAscending();
            previous = signer;
            while (j < validators.length && validators[j] < signer) j++;
            if (j == validators.length || validators[j] != signer) revert UnknownSigner(signer);
            if (_recover(proof, blockHash, p) != signer) revert BadSignature(signer);
            power += proof.powers[j];
            j++;
        }
    }

    /// @dev The signer of a precommit (zero when the signature is malformed or high-s).
    function _recover(CommitProof calldata proof, bytes32 blockHash, Precommit calldata p)
        private
        view
        returns (address recovered)
    {
        bytes32 digest = _voteDigest(proof.header.height, proof.certificate.round, blockHash, p);
        ECDSA.RecoverError err;
        (recovered, err,) = ECDSA.tryRecoverCalldata(digest, p.signature);
        if (err != ECDSA.RecoverError.NoError) recovered = address(0);
    }

    /// @dev EIP-712 digest of a precommit (`Vote` with kind 2) for `blockHash`, as src/consensus/votes.ts signs.
    function _voteDigest(uint64 height, uint32 round, bytes32 blockHash, Precommit calldata p)
        private
        view
        returns (bytes32)
    {
        bytes32 structHash = keccak256(
            abi.encode(VOTE_TYPEHASH, PRECOMMIT, height, round, blockHash, p.timestampMs, p.extensionHash)
        );
        return MessageHashUtils.toTypedDataHash(voteDomainSeparator, structHash);
    }
}
