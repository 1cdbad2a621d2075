#!/usr/bin/python3
"""Writes tests/chem/fingerprint_golden.tsv: RDKit's own answer (python3-rdkit, Debian 12's RDKit
2022.09) for real drug SMILES — the parent (LargestFragmentChooser, default options), its
canonical SMILES and the set bits of the Morgan fingerprint (radius 2, 2048 bits, RDKit defaults:
no chirality, no features), plus the Bemis–Murcko scaffold (MurckoDecompose) of the parent.

  /usr/bin/python3 tests/chem/make_fingerprint_golden.py > tests/chem/fingerprint_golden.tsv

CTest chem_fingerprint_golden_fresh regenerates it and compares with the committed file; the C++
test (tests/chem/chem_test.cc) compares cellflux's C++ fingerprints with it.
"""
import sys

from rdkit import Chem, rdBase
from rdkit.Chem import AllChem
from rdkit.Chem.MolStandardize import rdMolStandardize

# name, SMILES: rings, charges, stereo, salts/solvents, metals, aromatic heterocycles.
DRUGS = [
    ("aspirin", "CC(=O)Oc1ccccc1C(=O)O"),
    ("caffeine", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"),
    ("ibuprofen", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"),
    ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("metformin hydrochloride", "CN(C)C(=N)N=C(N)N.Cl"),
    ("imatinib mesylate", "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1.CS(=O)(=O)O"),
    ("staurosporine", "CN[C@@H]1C[C@H]2O[C@@](C)([C@@H]1OC)n1c3ccccc3c3c4CNC(=O)c4c4c5ccccc5n2c4c31"),
    ("doxorubicin hydrochloride", "COc1cccc2C(=O)c3c(O)c4C[C@](O)(C[C@H](O[C@H]5C[C@H](N)[C@H](O)[C@H](C)O5)c4c(O)c3C(=O)c12)C(=O)CO.Cl"),
    ("paclitaxel", "CC(=O)O[C@@]12CO[C@@H]1C[C@H](O)[C@]1(C)C(=O)[C@H](OC(C)=O)C3=C(C)[C@@H](OC(=O)[C@H](O)[C@@H](NC(=O)c4ccccc4)c4ccccc4)C[C@@](O)([C@@H](OC(=O)c4ccccc4)[C@H]21)C3(C)C"),
    ("sodium valproate", "CCCC(CCC)C(=O)[O-].[Na+]"),
    ("cisplatin", "N.N.Cl[Pt]Cl"),
    ("quinine", "COc1ccc2nccc([C@@H](O)[C@@H]3C[C@@H]4CCN3C[C@@H]4C=C)c2c1"),
    ("morphine sulfate pentahydrate", "CN1CC[C@]23c4c5ccc(O)c4O[C@H]2[C@@H](O)C=C[C@H]3[C@H]1C5.OS(=O)(=O)O.O.O.O.O.O"),
    ("tamoxifen citrate", "CC/C(=C(\\c1ccccc1)c1ccc(OCCN(C)C)cc1)c1ccccc1.OC(=O)CC(O)(CC(=O)O)C(=O)O"),
    ("dexamethasone", "C[C@@H]1C[C@H]2[C@@H]3CCC4=CC(=O)C=C[C@]4(C)[C@@]3(F)[C@@H](O)C[C@]2(C)[C@@]1(O)C(=O)CO"),
    ("atorvastatin calcium", "CC(C)c1c(C(=O)Nc2ccccc2)c(-c2ccccc2)c(-c2ccc(F)cc2)n1CC[C@@H](O)C[C@@H](O)CC(=O)[O-].CC(C)c1c(C(=O)Nc2ccccc2)c(-c2ccccc2)c(-c2ccc(F)cc2)n1CC[C@@H](O)C[C@@H](O)CC(=O)[O-].[Ca+2]"),
    ("chlorpromazine hydrochloride", "CN(C)CCCN1c2ccccc2Sc2ccc(Cl)cc21.Cl"),
    ("nicotine", "CN1CCC[C@H]1c1cccnc1"),
    ("warfarin", "CC(=O)CC(c1ccccc1)c1c(O)c2ccccc2oc1=O"),
    ("colchicine", "COc1ccc2c(cc1=O)[C@@H](NC(C)=O)CCc1cc(OC)c(OC)c(OC)c1-2"),
    ("camptothecin", "CC[C@@]1(O)C(=O)OCc2c1cc1-c3nc4ccccc4cc3Cn1c2=O"),
    ("nocodazole", "COC(=O)Nc1nc2cc(C(=O)c3cccs3)ccc2[nH]1"),
    ("trichostatin A", "C/C(=C\\[C@@H](C)C(=O)c1ccc(N(C)C)cc1)/C=C/C(=O)NO"),
    ("rapamycin fragment", "CO[C@@H]1C[C@@H](CC[C@H]1O)C[C@@H](C)[C@@H]1CC(=O)[C@H](C)/C=C(\\C)[C@@H](O)[C@@H](OC)C(=O)[C@H](C)C[C@H](C)/C=C/C=C/C=C(\\C)[C@H](OC)C[C@@H]2CC[C@@H](C)[C@@](O)(O2)C(=O)C(=O)N2CCCC[C@H]2C(=O)O1"),
    ("quaternary ammonium bromide", "C[N+](C)(C)CCOC(C)=O.[Br-]"),
    ("zwitterion glycine", "[NH3+]CC(=O)[O-]"),
    ("nitro compound", "O=[N+]([O-])c1ccc(Cl)cc1"),
    ("ethanol solvate of an amide", "NC(=O)c1cccnc1.CCO"),
    ("deuterated", "[2H]C([2H])([2H])Oc1ccccc1"),
    ("spiro ring", "C1CCC2(CC1)OCCO2"),
    ("macrocycle", "C1CCCCCCCCCCC1"),
    ("fused heteroaromatics", "c1ccc2c(c1)[nH]c1ccncc12"),
    ("sulfonamide", "Cc1ccc(S(=O)(=O)Nc2ccccn2)cc1"),
    ("boronic acid", "OB(O)c1ccccc1"),
    ("phosphate ester", "COP(=O)(OC)Oc1ccc([N+](=O)[O-])cc1"),
    ("DMSO", "CS(C)=O"),
    ("two equal fragments", "CCO.OCC"),
]


def main():
    rdBase.DisableLog("rdApp.*")
    chooser = rdMolStandardize.LargestFragmentChooser()
    out = sys.stdout
    out.write("# RDKit %s; columns: name, smiles, canonical parent, Murcko scaffold, Morgan r2 2048 bits\n"
              % rdBase.rdkitVersion)
    for name, smiles in DRUGS:
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            sys.exit(f"RDKit cannot parse {name}: {smiles}")
        parent = chooser.choose(mol)
        fp = AllChem.GetMorganFingerprintAsBitVect(parent, 2, nBits=2048)
        scaffold = Chem.MolToSmiles(Chem.MurckoDecompose(parent))
        bits = ",".join(str(b) for b in fp.GetOnBits())
        out.write("\t".join([name, smiles, Chem.MolToSmiles(parent), scaffold, bits]) + "\n")


if __name__ == "__main__":
    main()
