// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ReentrantToken (tests only)
/// @notice A mintable ERC-20 that, once armed, calls `target` with `data` from inside every transfer and
/// bubbles up the callee's revert, so a test sees the settler refusing the re-entry by its error.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public data;
    bool private _inHook;

    constructor() ERC20("Reentrant", "REE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Re-enter `target_` with `data_` on the next transfers (zero target: disarm).
    function arm(address target_, bytes calldata data_) external {
        target = target_;
        data = data_;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (target == address(0) || _inHook || from == address(0)) return;
        _inHook = true;
        (bool ok, bytes memory ret) = target.call(data);
        _inHook = false;
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}
