// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestToken
/// @notice An ERC-20 anyone may mint. Test networks only (`murmur contracts deploy --test-token`).
contract TestToken is ERC20 {
    constructor() ERC20("Murmur Test Token", "MTT") {}

    /// @notice Mints `amount` to `to`; open to every caller.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
