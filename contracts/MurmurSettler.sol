// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {
    CommitProof,
    FillInstruction,
    GaslessCrossChainOrder,
    IMurmurLightClient,
    Leaf,
    MurmurOrder,
    OnchainCrossChainOrder,
    Output,
    ResolvedCrossChainOrder
} from "./IMurmur.sol";

/// @title MurmurSettler
/// @notice ERC-7683 origin and destination settler of the Murmur network. On the origin it escrows the
/// user's input (`openFor`, `open`) and releases it against the network's commit certificate: to the
/// executor for a certified FILL leaf (`claim`), back to the user for a certified REFUND leaf (`refund`),
/// or back to the user without the network once `fillDeadline + refundGraceSec` has passed
/// (`refundExpired`). On the destination `fill` pays the recipient from the filler and records who filled.
/// @dev Encodings, names and checks: docs/settlement.md.
contract MurmurSettler is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice keccak256 of the MurmurOrder type string: the only `orderDataType` accepted.
    bytes32 public constant MURMUR_ORDER_TYPEHASH = keccak256(
        "MurmurOrder(address inputToken,uint256 inputAmount,address outputToken,uint256 outputAmount,address recipient,uint256[] destinationChainIds)"
    );
    bytes32 private constant ORDER_TYPEHASH = keccak256(
        "GaslessCrossChainOrder(address originSettler,address user,uint256 nonce,uint256 originChainId,uint32 openDeadline,uint32 fillDeadline,bytes32 orderDataType,bytes orderData)"
    );
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    /// @dev `open` nonces have the high bit set, signed ones are expected below it.
    uint256 private constant ONCHAIN_NONCE_BIT = 1 << 255;

    uint8 public constant KIND_FILL = 1;
    uint8 public constant KIND_REFUND = 2;
    uint8 private constant STATUS_NONE = 0;
    uint8 private constant STATUS_OPENED = 1;
    uint8 private constant STATUS_SETTLED = 2;
    uint8 private constant STATUS_REFUNDED = 3;

    /// @notice The light client whose trusted validator sets certify settlement roots.
    IMurmurLightClient public immutable lightClient;
    /// @notice Seconds after `fillDeadline` from which anyone may refund an unsettled order.
    uint256 public immutable refundGraceSec;

    /// @dev An origin order's escrow; user, status and fillDeadline share one slot.
    struct Escrow {
        address user;
        uint8 status;
        uint32 fillDeadline;
        address token;
        uint256 amount;
    }

    mapping(bytes32 => Escrow) private _escrows;
    mapping(address => mapping(uint256 => bool)) private _nonceUsed;
    mapping(bytes32 => address) private _filledBy;
    uint256 private _onchainCounter;

    event Open(bytes32 indexed orderId, ResolvedCrossChainOrder resolvedOrder);
    event OutputFilled(
        bytes32 indexed orderId, address indexed filler, address token, uint256 amount, address recipient
    );
    event Settled(bytes32 indexed orderId, address indexed executor, address token, uint256 amount);
    event Refunded(bytes32 indexed orderId, address indexed user, address token, uint256 amount);

    error WrongSettler();
    error WrongChain();
    error OpenDeadlinePassed();
    error BadDeadlines();
    error WrongOrderDataType();
    error BadSignature();
    error NonceUsed();
    error NativeInputNeedsOpen();
    error WrongValue();
    error FillDeadlinePassed();
    error NotADestination();
    error AlreadyFilled();
    error OrderIdMismatch();
    error OrderNotOpened(bytes32 orderId);
    error WrongLeafKind();
    error BadProof();
    error LeafMismatch();
    error TooEarly();
    error LengthMismatch();

    constructor(address lightClient_, uint256 refundGraceSec_) EIP712("Murmur", "1") {
        lightClient = IMurmurLightClient(lightClient_);
        refundGraceSec = refundGraceSec_;
    }

    // ------------------------------------------------------------------------------------------------
    // Origin

    /// @notice Opens a user-signed order: checks it, pulls `inputAmount` of `inputToken` from the user into
    /// escrow (ERC-20 allowance) and emits `Open`. `originFillerData` is reserved.
    function openFor(GaslessCrossChainOrder calldata order, bytes calldata signature, bytes calldata)
        external
        nonReentrant
    {
        if (order.originSettler != address(this)) revert WrongSettler();
        if (order.originChainId != block.chainid) revert WrongChain();
        if (block.timestamp > order.openDeadline) revert OpenDeadlinePassed();
        if (order.fillDeadline <= order.openDeadline) revert BadDeadlines();
        if (order.orderDataType != MURMUR_ORDER_TYPEHASH) revert WrongOrderDataType();
        bytes32 id = _orderId(order);
        if (!SignatureChecker.isValidSignatureNowCalldata(order.user, id, signature)) revert BadSignature();
        MurmurOrder memory data = abi.decode(order.orderData, (MurmurOrder));
        if (data.inputToken == address(0)) revert NativeInputNeedsOpen();
        _open(order, id, data);
        IERC20(data.inputToken).safeTransferFrom(order.user, address(this), data.inputAmount);
    }

    /// @notice Opens an order of the caller: native input with `msg.value == inputAmount`, ERC-20 input
    /// from the caller's allowance. Emits `Open` with the order in its gasless form.
    function open(OnchainCrossChainOrder calldata order) external payable nonReentrant {
        if (order.orderDataType != MURMUR_ORDER_TYPEHASH) revert WrongOrderDataType();
        if (order.fillDeadline <= block.timestamp) revert BadDeadlines();
        GaslessCrossChainOrder memory gasless = GaslessCrossChainOrder({
            originSettler: address(this),
            user: msg.sender,
            nonce: ONCHAIN_NONCE_BIT | _onchainCounter++,
            originChainId: block.chainid,
            openDeadline: uint32(block.timestamp),
            fillDeadline: order.fillDeadline,
            orderDataType: order.orderDataType,
            orderData: order.orderData
        });
        MurmurOrder memory data = abi.decode(order.orderData, (MurmurOrder));
        bytes32 id = _orderId(gasless);
        if (data.inputToken == address(0)) {
            if (msg.value != data.inputAmount) revert WrongValue();
            _open(gasless, id, data);
        } else {
            if (msg.value != 0) revert WrongValue();
            _open(gasless, id, data);
            IERC20(data.inputToken).safeTransferFrom(msg.sender, address(this), data.inputAmount);
        }
    }

    /// @notice Pays each certified FILL leaf's escrowed input to its executor. One certificate for the
    /// batch; every leaf must be of an order opened here, or the whole call reverts.
    function claim(Leaf[] calldata leaves, bytes32[][] calldata proofs, CommitProof calldata proof)
        external
        nonReentrant
    {
        bytes32 root = _certifiedRoot(leaves, proofs, proof);
        for (uint256 i = 0; i < leaves.length; i++) {
            Leaf calldata leaf = leaves[i];
            if (leaf.kind != KIND_FILL) revert WrongLeafKind();
            Escrow storage e = _checkLeaf(leaf, proofs[i], root);
            e.status = STATUS_SETTLED;
            _pay(e.token, leaf.executor, e.amount);
            emit Settled(leaf.orderId, leaf.executor, e.token, e.amount);
        }
    }

    /// @notice Pays each certified REFUND leaf's escrowed input back to its user; the leaf's token, amount
    /// and recipient must be the escrow's.
    function refund(Leaf[] calldata leaves, bytes32[][] calldata proofs, CommitProof calldata proof)
        external
        nonReentrant
    {
        bytes32 root = _certifiedRoot(leaves, proofs, proof);
        for (uint256 i = 0; i < leaves.length; i++) {
            Leaf calldata leaf = leaves[i];
            if (leaf.kind != KIND_REFUND) revert WrongLeafKind();
            Escrow storage e = _checkLeaf(leaf, proofs[i], root);
            if (leaf.token != e.token || leaf.amount != e.amount || leaf.recipient != e.user) revert LeafMismatch();
            e.status = STATUS_REFUNDED;
            _pay(e.token, e.user, e.amount);
            emit Refunded(leaf.orderId, e.user, e.token, e.amount);
        }
    }

    /// @notice Refunds an order never settled, without the network, once `fillDeadline + refundGraceSec`
    /// has passed. Anyone may call it; the user is paid.
    function refundExpired(bytes32 orderId_) external nonReentrant {
        Escrow storage e = _escrows[orderId_];
        if (e.status != STATUS_OPENED) revert OrderNotOpened(orderId_);
        if (block.timestamp <= uint256(e.fillDeadline) + refundGraceSec) revert TooEarly();
        e.status = STATUS_REFUNDED;
        _pay(e.token, e.user, e.amount);
        emit Refunded(orderId_, e.user, e.token, e.amount);
    }

    // ------------------------------------------------------------------------------------------------
    // Destination

    /// @notice Fills an order on this chain: moves `outputAmount` of `outputToken` from the caller to the
    /// recipient (native: `msg.value`, forwarded) and records the caller as the filler. `fillerData` is
    /// reserved.
    function fill(bytes32 orderId_, bytes calldata originData, bytes calldata) external payable nonReentrant {
        GaslessCrossChainOrder memory order = abi.decode(originData, (GaslessCrossChainOrder));
        if (_orderId(order) != orderId_) revert OrderIdMismatch();
        if (order.orderDataType != MURMUR_ORDER_TYPEHASH) revert WrongOrderDataType();
        if (block.timestamp > order.fillDeadline) revert FillDeadlinePassed();
        MurmurOrder memory data = abi.decode(order.orderData, (MurmurOrder));
        if (!_isDestination(data.destinationChainIds)) revert NotADestination();
        if (_filledBy[orderId_] != address(0)) revert AlreadyFilled();
        _filledBy[orderId_] = msg.sender;
        if (data.outputToken == address(0)) {
            if (msg.value != data.outputAmount) revert WrongValue();
            Address.sendValue(payable(data.recipient), msg.value);
        } else {
            if (msg.value != 0) revert WrongValue();
            IERC20(data.outputToken).safeTransferFrom(msg.sender, data.recipient, data.outputAmount);
        }
        emit OutputFilled(orderId_, msg.sender, data.outputToken, data.outputAmount, data.recipient);
    }

    // ------------------------------------------------------------------------------------------------
    // Views

    /// @notice 0 none, 1 opened, 2 settled, 3 refunded (origin side).
    function orderStatus(bytes32 orderId_) external view returns (uint8) {
        return _escrows[orderId_].status;
    }

    /// @notice Who filled the order on this chain; zero when not filled here.
    function filledBy(bytes32 orderId_) external view returns (address) {
        return _filledBy[orderId_];
    }

    /// @notice The order id: EIP-712 digest of the order under {name "Murmur", version "1",
    /// chainId: originChainId, verifyingContract: originSettler}, the node's intent id.
    function orderId(GaslessCrossChainOrder calldata order) external view returns (bytes32) {
        return _orderId(order);
    }

    // ------------------------------------------------------------------------------------------------
    // Internals

    function _open(GaslessCrossChainOrder memory order, bytes32 id, MurmurOrder memory data) private {
        if (_nonceUsed[order.user][order.nonce]) revert NonceUsed();
        _nonceUsed[order.user][order.nonce] = true;
        // A fresh (user, nonce) gives a fresh id; the status check only guards a hash collision.
        if (_escrows[id].status != STATUS_NONE) revert NonceUsed();
        _escrows[id] = Escrow({
            user: order.user,
            status: STATUS_OPENED,
            fillDeadline: order.fillDeadline,
            token: data.inputToken,
            amount: data.inputAmount
        });
        emit Open(id, _resolve(order, id, data));
    }

    function _resolve(GaslessCrossChainOrder memory order, bytes32 id, MurmurOrder memory data)
        private
        view
        returns (ResolvedCrossChainOrder memory r)
    {
        uint256[] memory dests = data.destinationChainIds;
        uint256 n = dests.length == 0 ? 1 : dests.length;
        bytes memory originData = abi.encode(order);
        bytes32 settler = bytes32(uint256(uint160(address(this))));
        r.user = order.user;
        r.originChainId = order.originChainId;
        r.openDeadline = order.openDeadline;
        r.fillDeadline = order.fillDeadline;
        r.orderId = id;
        r.maxSpent = new Output[](n);
        r.fillInstructions = new FillInstruction[](n);
        for (uint256 i = 0; i < n; i++) {
            uint256 chain = dests.length == 0 ? 0 : dests[i];
            r.maxSpent[i] = Output({
                token: bytes32(uint256(uint160(data.outputToken))),
                amount: data.outputAmount,
                recipient: bytes32(uint256(uint160(data.recipient))),
                chainId: chain
            });
            r.fillInstructions[i] =
                FillInstruction({destinationChainId: chain, destinationSettler: settler, originData: originData});
        }
        r.minReceived = new Output[](1);
        r.minReceived[0] = Output({
            token: bytes32(uint256(uint160(data.inputToken))),
            amount: data.inputAmount,
            recipient: bytes32(0),
            chainId: order.originChainId
        });
    }

    /// @dev The settlement root of a certified header, after the batch's shape is checked.
    function _certifiedRoot(Leaf[] calldata leaves, bytes32[][] calldata proofs, CommitProof calldata proof)
        private
        view
        returns (bytes32)
    {
        if (leaves.length != proofs.length || leaves.length == 0) revert LengthMismatch();
        lightClient.verify(proof);
        return proof.header.settlementRoot;
    }

    /// @dev The escrow of an opened order of this chain whose leaf is in the root.
    function _checkLeaf(Leaf calldata leaf, bytes32[] calldata merkleProof, bytes32 root)
        private
        view
        returns (Escrow storage e)
    {
        if (leaf.originChainId != block.chainid) revert WrongChain();
        e = _escrows[leaf.orderId];
        if (e.status != STATUS_OPENED) revert OrderNotOpened(leaf.orderId);
        bytes32 leafHash = keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(
                        leaf.kind,
                        leaf.orderId,
                        leaf.originChainId,
                        leaf.destinationChainId,
                        leaf.executor,
                        leaf.token,
                        leaf.amount,
                        leaf.recipient
                    )
                )
            )
        );
        if (!MerkleProof.verifyCalldata(merkleProof, root, leafHash)) revert BadProof();
    }

    function _pay(address token, address to, uint256 amount) private {
        if (token == address(0)) Address.sendValue(payable(to), amount);
        else IERC20(token).safeTransfer(to, amount);
    }

    function _isDestination(uint256[] memory dests) private view returns (bool) {
        if (dests.length == 0) return true;
        for (uint256 i = 0; i < dests.length; i++) {
            if (dests[i] == block.chainid) return true;
        }
        return false;
    }

    /// @dev Calldata orders are copied to memory (one function, one encoding to get right).
    function _orderId(GaslessCrossChainOrder memory order) private view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                ORDER_TYPEHASH,
                order.originSettler,
                order.user,
                order.nonce,
                order.originChainId,
                order.openDeadline,
                order.fillDeadline,
                order.orderDataType,
                keccak256(order.orderData)
            )
        );
        return MessageHashUtils.toTypedDataHash(_orderDomain(order.originChainId, order.originSettler), structHash);
    }

    /// @dev This settler's own domain comes cached from OZ's EIP712; a fill recomputes another origin's.
    function _orderDomain(uint256 chainId, address settler) private view returns (bytes32) {
        if (chainId == block.chainid && settler == address(this)) return _domainSeparatorV4();
        return keccak256(abi.encode(DOMAIN_TYPEHASH, keccak256("Murmur"), keccak256("1"), chainId, settler));
    }
}
